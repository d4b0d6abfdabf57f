from engine.stream.instrumentation import NoInstrumentation, RecordingInstrumentation, counter_key


def test_recording_instrumentation_keeps_totals_per_stage_and_counter():
    meter = RecordingInstrumentation()
    meter.stage("decode", 0.25)
    meter.stage("decode", 0.5)
    meter.count("batches")
    meter.count("events_published", 2, type="ENTER")
    meter.count("events_published", 3, type="ENTER")
    meter.count("checkpoints", result="written")
    assert meter.seconds == {"decode": 0.75}
    assert meter.calls == {"decode": 2}
    assert meter.counts == {
        "batches": 1,
        "events_published{type=ENTER}": 5,
        "checkpoints{result=written}": 1,
    }


def test_counter_keys_sort_their_labels():
    assert counter_key("x", {}) == "x"
    assert counter_key("x", {"b": "2", "a": "1"}) == "x{a=1,b=2}"


def test_no_instrumentation_accepts_everything():
    meter = NoInstrumentation()
    meter.stage("fetch", 1.0)
    meter.count("records_consumed", 3, topic="t")
