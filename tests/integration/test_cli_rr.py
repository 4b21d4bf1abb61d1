"""hato-rr: request/response as mosquitto_rr (MQTT 5 Response Topic and
Correlation Data, MQTT-4.10). The responder is a raw MQTT 5 client, so the
test sees exactly what hato-rr put in the request."""

import threading

from cliutil import conn_args, run
from mqttraw import publish, recv_publish, sub_opts, v5_subscriber


def responder(broker, answers):
    """Subscribe to rr/req; for the first request, send `answers` (payload,
    correlation or None for 'the request's') to its response topic."""
    c = v5_subscriber(broker, "rr-responder", [("rr/req", sub_opts(1))])
    seen = {}

    def serve():
        try:
            req = recv_publish(c, timeout=10)
            seen["req"] = req
            for i, (payload, corr) in enumerate(answers):
                props = [("correlation_data", req.props["correlation_data"] if corr is None
                          else corr)]
                c.send(publish(req.props["response_topic"], payload, qos=1, pid=i + 1,
                               version=5, properties=props))
                c.recv()
        finally:
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t, seen


def test_request_gets_response(broker, tmp_path):
    t, seen = responder(broker, [(b"the answer", None)])
    r = run("hato-rr", conn_args(broker) + ["-t", "rr/req", "-e", "rr/resp/1", "-m", "question",
                                            "-W", "10"], tmp_path, check=0)
    t.join(10)
    assert r.stdout == b"the answer\n"
    req = seen["req"]
    assert req.payload == b"question"
    assert req.props["response_topic"] == "rr/resp/1"
    assert req.props["correlation_data"]  # generated when not given


def test_response_for_another_request_is_ignored(broker, tmp_path):
    t, seen = responder(broker, [(b"not yours", b"other"), (b"yours", None)])
    r = run("hato-rr", conn_args(broker) + ["-t", "rr/req", "-e", "rr/resp/2", "-m", "q", "-v",
                                            "-W", "10"], tmp_path, check=0)
    t.join(10)
    assert r.stdout == b"rr/resp/2 yours\n"


def test_given_correlation_data_and_format(broker, tmp_path):
    t, seen = responder(broker, [(b"ok", None)])
    r = run("hato-rr", conn_args(broker) + ["-t", "rr/req", "-e", "rr/resp/3", "-m", "q",
                                            "-D", "publish", "correlation-data", "mine",
                                            "-F", "%t %D %p", "-W", "10"], tmp_path, check=0)
    t.join(10)
    assert seen["req"].props["correlation_data"] == b"mine"
    assert r.stdout == b"rr/resp/3 mine ok\n"


def test_no_response_times_out_27(broker, tmp_path):
    r = run("hato-rr", conn_args(broker) + ["-t", "rr/nobody", "-e", "rr/resp/4", "-m", "q",
                                            "-W", "1"], tmp_path)
    assert r.returncode == 27 and r.stderr == b"Timed out\n"


def test_rr_needs_response_topic(tmp_path):
    r = run("hato-rr", ["-t", "x", "-m", "q"], tmp_path, check=1)
    assert b"-e" in r.stderr
