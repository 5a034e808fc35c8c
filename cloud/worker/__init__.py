"""The inference worker's analysis core: what is in a clip, a one-sentence summary, whether to alert.

``analyse()`` (cloud/worker/analysis.py) is the one entry point the queue loop and ``pingwatch-cloud analyse``
call; the modules beside it each do one step (model, letterbox, decode/NMS, sampling, tracking, rules, summary,
snapshots, optional VLM).
"""
