"""Drives rocketmq-client-python 0.5.0rc2 (Apache's C++ client in a wheel) for wasmq's tests.

Usage: python client.py '<json job>'; prints one JSON object per line on stdout.
  produce: {"role":"produce","namesrv":..,"topic":..,"group":..,"mode":"sync"|"oneway"|"orderly",
            "messages":[{"tags":..,"keys":..,"props":{..},"body":..|"bodySize":N,"shardingKey":..,
                         "delayLevel":N}]}
     "generate":{"count":N,"prefix":"p","tags":"T","padMod":M} instead of "messages" sends N
     messages with bodies "<prefix>-<i>-" and i % M more 'x's (no padding unless M is set), so
     that long runs fit on a command line.
  consume: {"role":"consume","namesrv":..,"topic":..,"group":..,"expr":"*","broadcast":false,
            "orderly":false,"expect":N,"lingerMs":500,"timeoutMs":60000,"failTimes":0}
  txn-produce: {"role":"txn-produce","namesrv":..,"topic":..,"group":..,
            "messages":[{"tags":..,"keys":..,"props":{..},"body":..,
                         "local":"commit"|"rollback"|"unknown","check":"commit"|"rollback"|"unknown"}],
            "lingerMs":N,"expectChecks":N,"graceMs":500,"timeoutMs":60000}
     Sends each message with TransactionMQProducer.send_message_in_transaction; the local
     transaction answers "local", a check-back from the broker answers that message's "check"
     (found by the TXN_CASE property, the message's index, which every message carries; by keys
     failing that). Events: {"event":"local","index","answer","at"} when the local transaction
     runs, {"event":"sent","index","status","msgId","queueOffset","start","at"} per send,
     {"event":"checked","index","keys","topic","msgId","uniqKey","answer","at"} per check-back,
     {"event":"error",...}, and at the end {"event":"done","checks","checkedIndexes"}. After the
     sends the producer stays up for lingerMs to answer check-backs, or until expectChecks
     different messages were checked back and graceMs more passed (the answer is an
     END_TRANSACTION the client sends after the callback returns).
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

from rocketmq.client import (  # noqa: E402
    ConsumeStatus, Message, MessageModel, Producer, PushConsumer, SendStatus, TransactionMQProducer,
    TransactionStatus)


def body_of(m, i):
    if m.get("bodySize"):
        return bytes(((k * 31 + i) & 0xFF) for k in range(m["bodySize"]))
    return str(m.get("body", "message-%d" % i)).encode()


def job_messages():
    if "messages" in job:
        return job["messages"]
    g = job["generate"]
    pad = g.get("padMod")
    return [{"tags": g.get("tags"), "body": "%s-%d-%s" % (g["prefix"], i, "x" * (i % pad if pad else 0))}
            for i in range(g["count"])]


def produce():
    p = Producer(job.get("group", "PG_PY"))
    p.set_namesrv_addr(job["namesrv"])
    p.start()
    mode = job.get("mode", "sync")
    for i, m in enumerate(job_messages()):
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


TXN_ANSWERS = {"commit": TransactionStatus.COMMIT, "rollback": TransactionStatus.ROLLBACK,
               "unknown": TransactionStatus.UNKNOWN}


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def txn_produce():
    msgs = job["messages"]
    by_keys = {m["keys"]: i for i, m in enumerate(msgs) if m.get("keys")}
    checks = [0]  # check-backs answered
    seen = set()  # indexes of the messages checked back
    checked = threading.Event()

    # The library re-raises a callback's exception inside the ctypes callback, where ctypes
    # prints it and returns an undefined int (which may read as COMMIT or ROLLBACK): so the
    # callbacks never raise.
    def on_check(msg):
        try:
            case = _text(msg.get_property("TXN_CASE"))
            keys = _text(msg.keys)
            if case not in (None, "") and case.isdigit() and int(case) < len(msgs):
                i = int(case)
            elif keys in by_keys:
                i = by_keys[keys]
            else:
                out({"event": "error", "where": "check", "error": "unknown message",
                     "keys": keys, "txnCase": case, "msgId": msg.id})
                return TransactionStatus.UNKNOWN
            answer = msgs[i].get("check", "unknown")
            out({"event": "checked", "index": i, "keys": keys, "topic": msg.topic, "msgId": msg.id,
                 "uniqKey": _text(msg.get_property("UNIQ_KEY")), "answer": answer,
                 "at": int(time.time() * 1000)})
            with _lock:
                checks[0] += 1
                seen.add(i)
                if job.get("expectChecks") and len(seen) >= job["expectChecks"]:
                    checked.set()
            return TXN_ANSWERS.get(answer, TransactionStatus.UNKNOWN)
        except BaseException as e:  # noqa: BLE001
            out({"event": "error", "where": "check", "error": repr(e)})
            return TransactionStatus.UNKNOWN

    p = TransactionMQProducer(job.get("group", "PG_PY_TXN"), on_check)
    p.set_namesrv_addr(job["namesrv"])
    p.start()
    for i, m in enumerate(msgs):
        msg = Message(job["topic"])
        if m.get("tags"):
            msg.set_tags(m["tags"])
        if m.get("keys"):
            msg.set_keys(m["keys"])
        for k, v in (m.get("props") or {}).items():
            msg.set_property(k, str(v))
        msg.set_property("TXN_CASE", str(i))
        msg.set_body(body_of(m, i))
        local = m.get("local", "commit")

        # The message handed to this callback is the C++ MQMessage being sent, not an
        # MQMessageExt: its id/queue/offset accessors would read past the object, so none of
        # them is touched.
        def on_local(_msg, _user_args, i=i, local=local):
            try:
                out({"event": "local", "index": i, "answer": local, "at": int(time.time() * 1000)})
                return TXN_ANSWERS.get(local, TransactionStatus.UNKNOWN)
            except BaseException:  # noqa: BLE001
                return TransactionStatus.UNKNOWN

        start = int(time.time() * 1000)
        try:
            r = p.send_message_in_transaction(msg, on_local, None)
            status = "SEND_OK" if r.status == SendStatus.OK else r.status.name
            out({"event": "sent", "index": i, "status": status, "msgId": r.msg_id, "queueOffset": r.offset,
                 "start": start, "at": int(time.time() * 1000)})
        except Exception as e:  # noqa: BLE001 - report every failure as data
            out({"event": "error", "where": "send", "index": i, "error": str(e)})
    linger = job.get("lingerMs", 0) / 1000.0
    if job.get("expectChecks"):
        if checked.wait(linger):
            time.sleep(job.get("graceMs", 500) / 1000.0)
    elif linger:
        time.sleep(linger)
    p.shutdown()
    out({"event": "done", "checks": checks[0], "checkedIndexes": sorted(seen)})


try:
    role = job.get("role")
    if role == "produce":
        produce()
    elif role == "txn-produce":
        txn_produce()
    else:
        consume()
except Exception as e:  # noqa: BLE001
    out({"event": "fatal", "error": repr(e)})
    sys.stdout.flush()
    os._exit(2)
sys.stdout.flush()
os._exit(0)
