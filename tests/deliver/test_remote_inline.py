"""One remote batch in flight: the body, the retry data and the record of the outcome are read and
written on the delivery's event loop, without a thread (mta.transports.smtp_async, inline_io).

A thread trip per read cost more than the read in a delivery worker (docs/performance.md,
"The perf-relay branch").  Several batches at once still read in threads, so that one host's
file work never holds up another's conversation.  Deliveries run in this process, as a daemon
worker's or a queue run's do, on a real spool and to a real SMTP sink on loopback.
"""

from __future__ import annotations

import threading

from mta.config.loader import load_config
from mta.deliver.delivery import Delivery
from mta.deliver.loop import DeliveryLoop
from mta.runtime import build_runtime
from tests.support.mta import SMARTHOST_CONFIG, MtaEnv
from tests.support.sink import SmtpSink


def test_one_batch_is_delivered_without_a_thread_and_two_with_them(mta_env: MtaEnv, sink: SmtpSink) -> None:
    other = SmtpSink().start()
    try:
        mta_env.write_config(
            SMARTHOST_CONFIG.format(port=sink.port).replace(
                "  route_list = *", f"  route_list = example.net 127.0.0.1::{other.port} byname ; *"
            )
        )
        body = "Subject: x\n\n" + "a line of the body, long enough to matter\n" * 2000
        one = mta_env.run("-odq", "a@example.org", "b@example.org", input=body)
        two = mta_env.run("-odq", "c@example.org", "d@example.net", input=body)
        assert (one.returncode, two.returncode) == (0, 0), one.stderr + two.stderr
        first, second = mta_env.message_ids()
        runtime = build_runtime(load_config(str(mta_env.config)))
        with DeliveryLoop(runtime) as loop:
            before = set(threading.enumerate())
            report = Delivery(runtime, first, loop_runner=loop).run()
            assert report.completed and set(threading.enumerate()) == before
            report = Delivery(runtime, second, loop_runner=loop).run()
            assert report.completed and set(threading.enumerate()) - before  # the pool's threads
        assert [m.rcpt_tos for m in sink.messages] == [["a@example.org", "b@example.org"], ["c@example.org"]]
        assert [m.rcpt_tos for m in other.messages] == [["d@example.net"]]
        assert all(m.content.endswith(b"a line of the body, long enough to matter\r\n") for m in sink.messages)
    finally:
        other.stop()
    assert mta_env.message_ids() == []


def test_a_finished_delivery_is_freed_without_the_cyclic_collector(mta_env: MtaEnv, sink: SmtpSink) -> None:
    """A delivery worker delivers thousands of messages: if each left its objects in reference
    cycles (the SMTP job and its conversation, the retry decisions and their own methods), the
    collector would trace them all, 50 us a message (docs/performance.md, "Spare spool files").
    With the collector off, nothing of a finished delivery may be left."""
    import gc

    from mta.deliver.retrying import DeliveryRetry
    from mta.route.engine import RoutingEngine
    from mta.transports.smtp_plan import SmtpJob

    def alive() -> dict[str, int]:
        kinds = (SmtpJob, DeliveryRetry, RoutingEngine, Delivery)
        return {kind.__name__: sum(isinstance(o, kind) for o in gc.get_objects()) for kind in kinds}

    mta_env.write_config(SMARTHOST_CONFIG.format(port=sink.port))
    for n in range(3):
        assert mta_env.run("-odq", f"r{n}@example.org", input=f"Subject: {n}\n\nbody {n}\n").returncode == 0
    runtime = build_runtime(load_config(str(mta_env.config)))
    with DeliveryLoop(runtime) as loop:
        Delivery(runtime, mta_env.message_ids()[0], loop_runner=loop).run()  # warm: caches, connections
        gc.collect()
        before = alive()
        gc.disable()
        try:
            for message_id in mta_env.message_ids():
                assert Delivery(runtime, message_id, loop_runner=loop).run().completed
            assert alive() == before
        finally:
            gc.enable()
    assert len(sink.messages) == 3
