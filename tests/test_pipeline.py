from hub.config import HubConfig
from hub.pipeline import build_chain, default_camera_settings


def test_invalid_stored_polygons_are_dropped_at_set_up_not_at_every_frame():
    cfg = HubConfig()
    good = default_camera_settings(cfg) | {"masks": [[[0, 0], [0.5, 0], [0.5, 0.5]]]}
    assert len(build_chain(cfg, "cam", good, armed=True).masks) == 1
    bad = default_camera_settings(cfg) | {"masks": [[[0, 0], [2, 0], [0.5, 0.5]]]}  # x outside 0..1
    chain = build_chain(cfg, "cam", bad, armed=True)
    assert chain.masks == [] and chain.zones == []


def test_replay_may_lift_the_hourly_cap():
    cfg = HubConfig()
    settings = default_camera_settings(cfg)
    assert build_chain(cfg, "cam", settings, True).engine.config.max_events_per_hour == cfg.events.max_per_hour
    assert build_chain(cfg, "cam", settings, True, max_events_per_hour=10**6).engine.config.max_events_per_hour == 10**6
