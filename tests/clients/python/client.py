"""Drives rocketmq-client-python 0.5.0rc2 (Apache's C++ client in a wheel) for wasmq's tests.

Usage: python client.py '<json job>'; prints one JSON object per line on stdout.
  produce: {"role":"produce","namesrv":..,"topic":..,"group":..,"mode":"sync"|"oneway"|"orderly",
            "messages":[{"tags":..,"keys":..,"props":{..},"body":..|"bodySize":N,"shardingKey":..,
                         "delayLevel":N}]}
  consume: {"role":"consume","namesrv":..,"topic":..,"group":..,"expr":"*","broadcast":false,
            "orderly":false,"expect":N,"lingerMs":500,"timeoutMs":60000,"failTimes":0}
Every run has a hard timeout and ends the process itself (the C++ library's threads would
otherwise keep it alive).
"""
import hashlib
import json
import os
import sys
import threading
import time

job = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
_lock = threading.Lock()


def out(obj):
    with _lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def _watchdog():
    time.sleep(job.get("timeoutMs", 60000) / 1000.0 + 10)
    out({"event": "timeout"})
    os._exit(3)


threading.Thread(target=_watchdog, daemon=True).start()

from rocketmq.client import ConsumeStatus, Message, MessageModel, Producer, PushConsumer  # noqa: E402


def body_of(m, i):
    if m.get("bodySize"):
        return bytes(((k * 31 + i) & 0xFF) for k in range(m["bodySize"]))
    return str(m.get("body", "message-%d" % i)).encode()


def produce():
    p = Producer(job.get("group", "PG_PY"))
    p.set_namesrv_addr(job["namesrv"])
    p.start()
    mode = job.get("mode", "sync")
    for i, m in enumerate(job["messages"]):
        msg = Message(job["topic"])
        if m.get("tags"):
            msg.set_tags(m["tags"])
        if m.get("keys"):
            msg.set_keys(m["keys"])
        for k, v in (m.get("props") or {}).items():
            msg.set_property(k, str(v))
        if m.get("delayLevel"):
            msg.set_delay_time_level(int(m["delayLevel"]))
        msg.set_body(body_of(m, i))
        try:
            if mode == "oneway":
                p.send_oneway(msg)
                out({"event": "sent", "i": i, "status": "ONEWAY"})
            elif mode == "orderly":
                r = p.send_orderly_with_sharding_key(msg, m["shardingKey"])
                out({"event": "sent", "i": i, "status": str(r.status), "msgId": r.msg_id, "queueOffset": r.offset})
            else:
                start = int(time.time() * 1000)
                r = p.send_sync(msg)
                out({"event": "sent", "i": i, "start": start, "at": int(time.time() * 1000), "status": str(r.status), "msgId": r.msg_id, "queueOffset": r.offset})
        except Exception as e:  # noqa: BLE001 - report every failure as data
            out({"event": "error", "i": i, "error": str(e)})
    p.shutdown()


def consume():
    model = MessageModel.BROADCASTING if job.get("broadcast") else MessageModel.CLUSTERING
    c = PushConsumer(job["group"], orderly=bool(job.get("orderly")), message_model=model)
    c.set_namesrv_addr(job["namesrv"])
    done = threading.Event()
    failures = {}
    count = [0]
    fail_times = job.get("failTimes", 0)

    def on_message(msg):
        body0 = msg.body or b""
        out({"event": "attempt", "body": body0.decode("utf-8", "replace") if len(body0) <= 256 else None,
             "reconsumeTimes": msg.reconsume_times, "at": int(time.time() * 1000)})
        failed = failures.get(msg.id, 0)
        if failed < fail_times:
            failures[msg.id] = failed + 1
            return ConsumeStatus.RECONSUME_LATER
        body = msg.body or b""
        with _lock:
            count[0] += 1
            n = count[0]
        out({
            "event": "msg", "topic": msg.topic, "tags": msg.tags.decode() if isinstance(msg.tags, bytes) else msg.tags,
            "keys": msg.keys.decode() if isinstance(msg.keys, bytes) else msg.keys, "msgId": msg.id,
            "queueId": msg.queue_id, "queueOffset": msg.queue_offset, "reconsumeTimes": msg.reconsume_times,
            "bodyLen": len(body), "body": body.decode("utf-8", "replace") if len(body) <= 256 else None,
            "bodySha256": hashlib.sha256(body).hexdigest(),
        })
        if job.get("expect") and n >= job["expect"]:
            done.set()
        return ConsumeStatus.CONSUME_SUCCESS

    c.subscribe(job["topic"], on_message, job.get("expr", "*"))
    c.start()
    out({"event": "ready"})
    done.wait(job.get("timeoutMs", 60000) / 1000.0)
    if job.get("lingerMs"):
        time.sleep(job["lingerMs"] / 1000.0)
    c.shutdown()
    out({"event": "done", "count": count[0]})


try:
    produce() if job.get("role") == "produce" else consume()
except Exception as e:  # noqa: BLE001
    out({"event": "fatal", "error": repr(e)})
    sys.stdout.flush()
    os._exit(2)
sys.stdout.flush()
os._exit(0)
