"""Telegram alerts from the cloud (`pingwatch-cloud notify`): follows the `changes` table, sends each event's
alert in stages (photo at the start, clip as a reply, caption edited with the analysis), answers commands and
buttons, and acts on the hub through hub commands. See notifier.py for the data flow."""

from cloud.notify.notifier import Notifier, NotifierStats

__all__ = ["Notifier", "NotifierStats"]
