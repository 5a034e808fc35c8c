"""One notifier works at a time: a second stands by (no double sends, no doubled pacing) and takes over when the
first stops. Real API, database (both engines), Azurite; the fake Bot API."""

from __future__ import annotations

import uuid

from tests.notify.conftest import Rig, jpeg, until


async def test_a_second_notifier_stands_by_and_takes_over(rig: Rig) -> None:
    await rig.link()
    standby = rig.new_notifier(lease_renew_s=0.1)
    await standby.start()
    assert rig.notifier.working and not standby.working
    first = f"ev-{uuid.uuid4().hex[:10]}"
    await rig.start_event(first, jpeg())
    await rig.settled(first, "started")
    await rig.notifier.stop()  # a clean stop gives the lease up at once

    async def took_over() -> bool | None:
        return standby.working or None

    await until(took_over, what="the standby notifier took over")
    second = f"ev-{uuid.uuid4().hex[:10]}"
    await rig.start_event(second, jpeg(120))
    await rig.settled(second, "started")
    photos = [m for m in rig.messages() if m.method == "sendPhoto"]
    assert len(photos) == 2  # one per event: the standby sent nothing while the first worked
    assert [r.state for r in await rig.rows(first)] == ["sent"]
    assert [r.state for r in await rig.rows(second)] == ["sent"]
