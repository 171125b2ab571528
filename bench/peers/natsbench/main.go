// Command natsbench drives NATS JetStream (file storage) in the scenarios bench/peers/run.sh
// compares wasmq with. Standard library and github.com/nats-io/nats.go only.
//
// Usage: natsbench [flags] setup|sync|async|replay
//
//	setup   (re)create the stream (file storage, one subject)
//	sync    -clients N publishers, each on its own connection, one synchronous publish in
//	        flight each (js.Publish waits for the PubAck); per-message latency recorded
//	async   one connection, js.PublishAsync with at most -pending acks outstanding
//	replay  read the stream from its first message: -mode pull (durable pull consumer,
//	        Fetch(-batch), no acks) or -mode ordered (ordered push consumer)
//
// Every scenario stops at -count messages or after -duration, whichever comes first, and
// prints one line (stable; run.sh parses it by key):
//
//	natsbench scenario=S clients=C msgs=N errors=E secs=W msgs_per_s=R p50_us=X p99_us=Y
//
// secs is the measured window: first request sent -> last reply (or message) received.
// p50_us/p99_us are "-" where there is no per-message latency (async, replay).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

type config struct {
	url      string
	stream   string
	subject  string
	size     int
	count    int64
	duration time.Duration
	clients  int
	pending  int
	mode     string
	batch    int
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", nats.DefaultURL, "server URL")
	flag.StringVar(&c.stream, "stream", "BENCH", "stream name")
	flag.StringVar(&c.subject, "subject", "bench", "subject of the stream")
	flag.IntVar(&c.size, "size", 1024, "message body size in bytes")
	flag.Int64Var(&c.count, "count", 100000, "stop after this many messages")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "stop after this long")
	flag.IntVar(&c.clients, "clients", 1, "sync: concurrent publishers (one connection each)")
	flag.IntVar(&c.pending, "pending", 256, "async: most publishes awaiting their ack")
	flag.StringVar(&c.mode, "mode", "pull", "replay: pull or ordered")
	flag.IntVar(&c.batch, "batch", 1000, "replay pull: messages per Fetch")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: natsbench [flags] setup|sync|async|replay")
		os.Exit(2)
	}
	var err error
	switch flag.Arg(0) {
	case "setup":
		err = setup(c)
	case "sync":
		err = runSync(c)
	case "async":
		err = runAsync(c)
	case "replay":
		err = runReplay(c)
	default:
		err = fmt.Errorf("unknown scenario %q", flag.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsbench:", err)
		os.Exit(1)
	}
}

func connect(c config) (*nats.Conn, nats.JetStreamContext, error) {
	nc, err := nats.Connect(c.url, nats.Name("natsbench"))
	if err != nil {
		return nil, nil, err
	}
	js, err := nc.JetStream()
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func setup(c config) error {
	nc, js, err := connect(c)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := js.DeleteStream(c.stream); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
		return fmt.Errorf("delete stream: %w", err)
	}
	_, err = js.AddStream(&nats.StreamConfig{
		Name:      c.stream,
		Subjects:  []string{c.subject},
		Storage:   nats.FileStorage,
		Retention: nats.LimitsPolicy,
		Replicas:  1,
	})
	if err != nil {
		return fmt.Errorf("add stream: %w", err)
	}
	return nil
}

func body(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// report prints the scenario's one summary line.
func report(scenario string, clients int, msgs, errs int64, window time.Duration, lat []time.Duration) {
	fmt.Println(summary(scenario, clients, msgs, errs, window, lat))
}

// summary is the line report prints; lat (per-message latencies, sorted here) may be empty.
func summary(scenario string, clients int, msgs, errs int64, window time.Duration, lat []time.Duration) string {
	secs := window.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	p50, p99 := "-", "-"
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		q := func(f float64) string {
			i := int(f * float64(len(lat)))
			if i >= len(lat) {
				i = len(lat) - 1
			}
			return fmt.Sprintf("%.0f", float64(lat[i].Nanoseconds())/1000)
		}
		p50, p99 = q(0.50), q(0.99)
	}
	return fmt.Sprintf("natsbench scenario=%s clients=%d msgs=%d errors=%d secs=%.6f msgs_per_s=%.1f p50_us=%s p99_us=%s",
		scenario, clients, msgs, errs, secs, float64(msgs)/secs, p50, p99)
}

// runSync: c.clients publishers, each with its own connection and one publish in flight.
func runSync(c config) error {
	if c.clients < 1 {
		return errors.New("-clients must be 1 or more")
	}
	conns := make([]*nats.Conn, c.clients)
	jss := make([]nats.JetStreamContext, c.clients)
	for i := range conns {
		nc, js, err := connect(c)
		if err != nil {
			return err
		}
		defer nc.Close()
		conns[i], jss[i] = nc, js
	}
	data := body(c.size)
	var claimed, errs int64
	lats := make([][]time.Duration, c.clients)
	lasts := make([]time.Time, c.clients)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(c.duration)
	for i := 0; i < c.clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<16)
			for atomic.AddInt64(&claimed, 1) <= c.count {
				t0 := time.Now()
				if t0.After(deadline) {
					break
				}
				_, err := jss[i].Publish(c.subject, data)
				t1 := time.Now()
				if err != nil {
					atomic.AddInt64(&errs, 1)
					continue
				}
				lat = append(lat, t1.Sub(t0))
				lasts[i] = t1
			}
			lats[i] = lat
		}(i)
	}
	wg.Wait()
	var all []time.Duration
	last := start
	for i := range lats {
		all = append(all, lats[i]...)
		if lasts[i].After(last) {
			last = lasts[i]
		}
	}
	name := "sync"
	if c.clients > 1 {
		name = "sync_concurrent"
	}
	report(name, c.clients, int64(len(all)), errs, last.Sub(start), all)
	return nil
}

// runAsync: one connection, PublishAsync with at most c.pending acks outstanding.
func runAsync(c config) error {
	var errs int64
	nc, err := nats.Connect(c.url, nats.Name("natsbench"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream(
		nats.PublishAsyncMaxPending(c.pending),
		nats.PublishAsyncErrHandler(func(_ nats.JetStream, _ *nats.Msg, _ error) {
			atomic.AddInt64(&errs, 1)
		}),
	)
	if err != nil {
		return err
	}
	data := body(c.size)
	var sent, stalls int64
	start := time.Now()
	deadline := start.Add(c.duration)
	for sent < c.count && time.Now().Before(deadline) {
		if _, err := js.PublishAsync(c.subject, data); err != nil {
			// Stalled (c.pending outstanding for 200 ms): nothing was sent, try again.
			stalls++
			if stalls > 1000 {
				return fmt.Errorf("publish async: %w", err)
			}
			continue
		}
		sent++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(c.duration + 30*time.Second):
		return errors.New("acks still outstanding 30 s after the run")
	}
	window := time.Since(start)
	e := atomic.LoadInt64(&errs)
	report("async", 1, sent-e, e, window, nil)
	return nil
}

// runReplay reads c.count messages of the stream from its first one.
func runReplay(c config) error {
	nc, js, err := connect(c)
	if err != nil {
		return err
	}
	defer nc.Close()
	var got int64
	var start, last time.Time
	deadline := time.Now().Add(c.duration)
	switch c.mode {
	case "pull":
		sub, err := js.PullSubscribe(c.subject, "natsbench-pull",
			nats.BindStream(c.stream), nats.DeliverAll(), nats.AckNone())
		if err != nil {
			return fmt.Errorf("pull subscribe: %w", err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		start = time.Now()
		for got < c.count && time.Now().Before(deadline) {
			n := c.batch
			if left := c.count - got; left < int64(n) {
				n = int(left)
			}
			msgs, err := sub.Fetch(n, nats.MaxWait(2*time.Second))
			if err != nil && !errors.Is(err, nats.ErrTimeout) {
				return fmt.Errorf("fetch: %w", err)
			}
			if len(msgs) > 0 {
				got += int64(len(msgs))
				last = time.Now()
			} else if err != nil {
				break // backlog exhausted
			}
		}
	case "ordered":
		sub, err := js.SubscribeSync(c.subject, nats.BindStream(c.stream),
			nats.OrderedConsumer(), nats.DeliverAll())
		if err != nil {
			return fmt.Errorf("ordered subscribe: %w", err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		start = time.Now()
		for got < c.count {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			if left > 2*time.Second {
				left = 2 * time.Second
			}
			if _, err := sub.NextMsg(left); err != nil {
				if errors.Is(err, nats.ErrTimeout) {
					break // backlog exhausted
				}
				return fmt.Errorf("next message: %w", err)
			}
			got++
			last = time.Now()
		}
	default:
		return fmt.Errorf("unknown -mode %q (pull or ordered)", c.mode)
	}
	if got == 0 {
		return errors.New("replay read nothing")
	}
	report("replay_"+c.mode, 1, got, 0, last.Sub(start), nil)
	return nil
}
