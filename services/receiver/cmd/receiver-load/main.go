// Command receiver-load measures how fast the webhook receiver turns Harbor pushes into stored JetStream
// messages, next to two baselines that do the least the same job can do. `make bench` runs it through
// scripts/load.sh.
//
// For each sync mode (sync_always true, the default, which fsyncs before every ack; and false) and each
// concurrency C, it runs three variants, always against a fresh embedded NATS server with an empty store (a new
// temporary directory), so that every variant meets the same store state:
//
//   - receiver: the real receiver over HTTP loopback (POST /webhooks/harbor/bench, Authorization checked,
//     payload parsed, protojson event published, 202 only after JetStream's ack);
//   - minimal:  an echo server whose one handler reads the body, decodes the JSON into a small struct and
//     publishes the body to the same subject, waiting up to 2 s for the ack, then answers 202;
//   - bare:     no HTTP: C goroutines publishing the same bodies straight to JetStream, waiting for each ack.
//
// Every request carries a distinct Harbor PUSH_ARTIFACT (Default format) body, generated before any timing,
// so that JetStream's dedupe never short-cuts the store; a duplicate ack fails the cell. The load is a closed
// loop: C workers send back to back over keep-alive connections. After a warm-up, requests completing within
// the measured window count: req/s is their number over the window, p50 and p99 their latencies as the client
// saw them. A cell's measured time is split over -rounds rounds, each round running every variant once in a
// rotating order, so that a burst of other work on the machine hits all variants alike rather than one. The
// load generator, the servers and NATS share this process and this machine's cores.
//
// Reading the table: receiver/minimal is the receiver's req/s over the minimal handler's at the same
// concurrency — the price of everything the receiver does beyond storing the body (auth, parsing, the
// protojson event, metrics, the JSON answer). bare is the ceiling JetStream itself sets. The summary checks
// the targets at concurrency 16: ratio >= 0.9, p99 < 25 ms with fsync and < 10 ms without. Misses are
// informational; the exit status is 1 only when a request failed. cpu/req is the whole process's CPU time per
// request and its ratio (minimal over receiver) is what the req/s ratio would be on otherwise idle cores: trust it
// over req/s when the load average printed with each table shows other work on the machine.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/harborflow/harborflow/pkg/broker"
	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/config"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/services/receiver"
)

const (
	secret  = "Bearer bench-s3cr3t"
	path    = "/webhooks/harbor/bench"
	subject = "registry.bench.push" // where the receiver puts a push of source "bench"
)

// result is one cell's measurement, summed over its rounds.
type result struct {
	lats      []time.Duration // latencies of the requests completed in the measured windows
	window    time.Duration   // measured time
	cpu       time.Duration   // CPU time of this whole process (load, servers, NATS) in the measured time
	errs      int64
	errMsgs   []string
	exhausted bool // the payloads ran out before a window ended
}

func (r result) rps() float64 {
	if r.window <= 0 {
		return 0
	}
	return float64(len(r.lats)) / r.window.Seconds()
}

// cpuPerReq is the process's CPU time per request: what the throughput would be bound by on idle cores, and
// far less disturbed by other work on the machine than req/s.
func (r result) cpuPerReq() time.Duration {
	if len(r.lats) == 0 {
		return 0
	}
	return r.cpu / time.Duration(len(r.lats))
}

func (r *result) add(o result) {
	r.lats = append(r.lats, o.lats...)
	r.window += o.window
	r.cpu += o.cpu
	r.errs += o.errs
	r.errMsgs = append(r.errMsgs, o.errMsgs...)
	r.exhausted = r.exhausted || o.exhausted
}

// percentile returns the q-quantile of the latencies (nearest rank).
func (r result) percentile(q float64) time.Duration {
	if len(r.lats) == 0 {
		return 0
	}
	slices.Sort(r.lats)
	i := int(q*float64(len(r.lats))+0.999999) - 1
	return r.lats[max(0, min(i, len(r.lats)-1))]
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadavg is the machine's load average, which says how much else ran alongside ("" where unknown).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return "load average " + strings.Join(f[:3], " ")
}

func main() {
	duration := flag.Duration("duration", 3*time.Second, "measured time per cell, split over its rounds")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "unmeasured warm-up per round")
	rounds := flag.Int("rounds", 3, "rounds per concurrency; each runs every variant once, in a rotating order")
	concs := flag.String("concurrency", "1,16,64", "comma-separated concurrencies")
	modes := flag.String("modes", "true,false", "comma-separated sync_always values")
	variants := flag.String("variants", "minimal,receiver,bare", "comma-separated variants: minimal, receiver, bare")
	npay := flag.Int("payloads", 150000, "distinct payloads generated up front (a cell stops early when they run out)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of every cell to this file")
	flag.Parse()
	if err := run(*duration, *warmup, *rounds, *concs, *modes, *variants, *npay, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "receiver-load:", err)
		os.Exit(1)
	}
}

func run(duration, warmup time.Duration, rounds int, concList, modeList, variantList string, npay int, cpuprofile string) error {
	var concs []int
	for _, s := range strings.Split(concList, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			return fmt.Errorf("-concurrency: %q is not a positive integer", s)
		}
		concs = append(concs, c)
	}
	var modes []bool
	for _, s := range strings.Split(modeList, ",") {
		m, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-modes: %q is not true or false", s)
		}
		modes = append(modes, m)
	}
	variants := strings.Split(variantList, ",")
	for _, v := range variants {
		if v != "minimal" && v != "receiver" && v != "bare" {
			return fmt.Errorf("-variants: unknown variant %q", v)
		}
	}
	if rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	bodies := payloads(npay)
	fmt.Printf("machine: %d CPUs, GOMAXPROCS %d, %s %s/%s, %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, loadavg())
	fmt.Printf("load: %d distinct Harbor PUSH_ARTIFACT bodies of ~%d bytes; per cell %d rounds of %s warm-up + %s measured, each on a fresh NATS store, variants interleaved\n\n",
		len(bodies), len(bodies[0]), rounds, warmup, duration/time.Duration(rounds))

	root, err := os.MkdirTemp("", "receiver-load-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(root) }()
	// An interrupted run leaves no store behind either.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		_ = os.RemoveAll(root)
		os.Exit(130)
	}()
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	failed := false
	var summary []string
	for _, syncAlways := range modes {
		res := map[string]map[int]result{}
		for _, c := range concs {
			for round := range rounds {
				// Rotate the order so that no variant always runs first (or right after the heaviest one).
				for k := range variants {
					v := variants[(k+round)%len(variants)]
					fmt.Fprintf(os.Stderr, "sync_always=%t conc=%d round %d %s ...\n", syncAlways, c, round+1, v)
					r, err := runCell(root, syncAlways, v, c, bodies, warmup, duration/time.Duration(rounds))
					if err != nil {
						return fmt.Errorf("sync_always=%t conc=%d %s: %w", syncAlways, c, v, err)
					}
					if res[v] == nil {
						res[v] = map[int]result{}
					}
					sum := res[v][c]
					sum.add(r)
					res[v][c] = sum
					failed = failed || r.errs > 0
				}
			}
		}
		fmt.Printf("sync_always=%t\n", syncAlways)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "conc\tvariant\treq/s\tp50\tp99\tcpu/req\treceiver/minimal\t")
		for _, c := range concs {
			for _, v := range variants {
				r := res[v][c]
				ratio, note := "", ""
				if m, ok := res["minimal"][c]; ok && v == "receiver" {
					ratio = fmt.Sprintf("%.2f (cpu %.2f)", r.rps()/m.rps(), float64(m.cpuPerReq())/float64(r.cpuPerReq()))
				}
				if r.exhausted {
					note += fmt.Sprintf(" (payloads ran out: measured %s)", r.window.Round(time.Millisecond))
				}
				if r.errs > 0 {
					note += fmt.Sprintf(" FAILED: %d errors, e.g. %s", r.errs, strings.Join(r.errMsgs[:min(3, len(r.errMsgs))], " | "))
				}
				fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%.0fµs\t%s\t%s\n", c, v, r.rps(), ms(r.percentile(0.50)), ms(r.percentile(0.99)),
					float64(r.cpuPerReq())/float64(time.Microsecond), ratio, note)
			}
		}
		_ = tw.Flush()
		fmt.Printf("(%s)\n\n", loadavg())
		rr, okR := res["receiver"][16]
		mr, okM := res["minimal"][16]
		if okR {
			limit := 10 * time.Millisecond
			if syncAlways {
				limit = 25 * time.Millisecond
			}
			line := fmt.Sprintf("sync_always=%-5t conc 16:", syncAlways)
			if okM {
				ratio := rr.rps() / mr.rps()
				line += fmt.Sprintf(" ratio %.2f (target >= 0.90) %s, cpu/req ratio %.2f;", ratio, passMiss(ratio >= 0.9),
					float64(mr.cpuPerReq())/float64(rr.cpuPerReq()))
			}
			p99 := rr.percentile(0.99)
			line += fmt.Sprintf(" receiver p99 %s (target < %s) %s", ms(p99), ms(limit), passMiss(p99 < limit))
			summary = append(summary, line)
		}
	}
	for _, l := range summary {
		fmt.Println(l)
	}
	if failed {
		return errors.New("some requests failed (see FAILED above)")
	}
	return nil
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// payloads returns n distinct Harbor 2.13 PUSH_ARTIFACT bodies (Default format, as in server_test.go's
// pushDefault): digest, tag and occur_at differ, so each has its own content-derived id.
func payloads(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		tag := fmt.Sprintf("4.2.0.%d", i)
		out[i] = fmt.Appendf(nil, `{"type":"PUSH_ARTIFACT","occur_at":%d,"operator":"admin","event_data":{"resources":[{"digest":"sha256:%x","tag":%q,"resource_url":"harbor.bench.example:443/wso2-apim/base/am:%s"}],"repository":{"date_created":1700000000,"name":"base/am","namespace":"wso2-apim","repo_full_name":"wso2-apim/base/am","repo_type":"private"}}}`,
			1763855000+i, sum, tag, tag)
	}
	return out
}

// warnLog shows NATS warnings and errors (a slow consumer, a lost connection) on stderr: they explain stalls.
var warnLog = zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.Lock(os.Stderr), zap.WarnLevel))

// store is a fresh embedded NATS server with the harborflow streams and a connected bus.
type store struct {
	srv *broker.Server
	nc  *nats.Conn
	bus *bus.Bus
	dir string
}

func startStore(root string, syncAlways bool) (*store, error) {
	dir, err := os.MkdirTemp(root, "nats-")
	if err != nil {
		return nil, err
	}
	srv, err := broker.Start(broker.Config{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "js"), SyncAlways: syncAlways}, warnLog)
	if err != nil {
		return nil, err
	}
	s := &store{srv: srv, dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, srv.ClientURL(), "receiver-load", warnLog)
	if err == nil {
		s.nc = nc
		s.bus, err = bus.New(nc)
	}
	if err == nil {
		err = s.bus.EnsureStreams(ctx, event.StreamOptions{Replicas: 1, DuplicateWindow: 2 * time.Minute})
	}
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// stored is the number of messages in the REGISTRY stream.
func (s *store) stored() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := s.bus.StreamInfo(ctx, event.StreamRegistry)
	if err != nil {
		return 0, err
	}
	return info.Messages, nil
}

func (s *store) stop() {
	if s.nc != nil {
		s.nc.Close()
	}
	s.srv.Shutdown()
	_ = os.RemoveAll(s.dir)
}

// publishBody is what the minimal handler and the bare loop do: store the body under an id derived from it.
func publishBody(ctx context.Context, b *bus.Bus, body []byte) error {
	ack, err := b.Publish(ctx, &bus.Message{Subject: subject, ID: event.ID(string(body)), Data: body})
	if err == nil && ack.Duplicate {
		err = errors.New("stored as a duplicate")
	}
	return err
}

// minimalPayload is what the minimal handler decodes: the fields an event is built from.
type minimalPayload struct {
	Type      string `json:"type"`
	OccurAt   int64  `json:"occur_at"`
	Operator  string `json:"operator"`
	EventData struct {
		Resources []struct {
			Digest string `json:"digest"`
			Tag    string `json:"tag"`
		} `json:"resources"`
		Repository struct {
			Name         string `json:"name"`
			Namespace    string `json:"namespace"`
			RepoFullName string `json:"repo_full_name"`
		} `json:"repository"`
	} `json:"event_data"`
}

// startTarget starts a variant and returns what one request does and how to stop it.
func startTarget(variant string, b *bus.Bus, conc int) (do func(body []byte) error, stop func(), err error) {
	var url string
	var shutdown func(context.Context) error
	switch variant {
	case "bare":
		return func(body []byte) error { return publishBody(context.Background(), b, body) }, func() {}, nil
	case "receiver":
		rs, err := receiver.New(receiver.Config{Listen: "127.0.0.1:0", Sources: []config.Source{
			{Name: "bench", Kind: config.SourceHarbor, Host: "harbor.bench.example", Secrets: []config.Secret{secret}},
		}}, receiver.Deps{Bus: b, Log: zap.NewNop()})
		if err == nil {
			err = rs.Start(context.Background())
		}
		if err != nil {
			return nil, nil, err
		}
		url, shutdown = "http://"+rs.Addr()+path, rs.Shutdown
	case "minimal":
		e := echo.New()
		e.HideBanner, e.HidePort = true, true
		e.POST(path, func(c echo.Context) error {
			body, err := io.ReadAll(c.Request().Body)
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, err.Error())
			}
			var p minimalPayload
			if err := json.Unmarshal(body, &p); err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, err.Error())
			}
			// Bound the wait for the ack as the receiver does (its default publish timeout).
			ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
			defer cancel()
			if err := publishBody(ctx, b, body); err != nil {
				return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
			}
			return c.NoContent(http.StatusAccepted)
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		url, shutdown = "http://"+ln.Addr().String()+path, srv.Shutdown
	}
	tr := &http.Transport{MaxIdleConns: 2 * conc, MaxIdleConnsPerHost: conc, IdleConnTimeout: time.Minute, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	do = func(body []byte) error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", secret)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		answer, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		switch {
		case err != nil:
			return err
		case resp.StatusCode != http.StatusAccepted:
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(answer))
		case bytes.Contains(answer, []byte(`"duplicates"`)):
			return fmt.Errorf("stored as a duplicate: %s", answer)
		}
		return nil
	}
	stop = func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "shutting down", variant+":", err)
		}
	}
	return do, stop, nil
}

// runCell runs one round of one variant at one concurrency against a fresh store and measures it.
func runCell(root string, syncAlways bool, variant string, conc int, bodies [][]byte, warmup, duration time.Duration) (result, error) {
	st, err := startStore(root, syncAlways)
	if err != nil {
		return result{}, err
	}
	defer st.stop()
	do, stop, err := startTarget(variant, st.bus, conc)
	if err != nil {
		return result{}, err
	}
	runtime.GC()

	var (
		next               atomic.Int64
		measuring, stopped atomic.Bool
		ok, errs           atomic.Int64
		mu                 sync.Mutex
		errMsgs            []string
		wg                 sync.WaitGroup
		ran                = make(chan struct{})
		ranOnce            sync.Once
		exhausted          bool
	)
	lats := make([][]time.Duration, conc)
	for w := range conc {
		lats[w] = make([]time.Duration, 0, len(bodies)/conc+1)
		wg.Go(func() {
			for !stopped.Load() {
				i := next.Add(1) - 1
				if i >= int64(len(bodies)) {
					ranOnce.Do(func() { exhausted = true; close(ran) })
					return
				}
				start := time.Now()
				err := do(bodies[i])
				d := time.Since(start)
				if err != nil {
					if errs.Add(1) <= 3 {
						mu.Lock()
						errMsgs = append(errMsgs, err.Error())
						mu.Unlock()
					}
					continue
				}
				ok.Add(1)
				if measuring.Load() && !stopped.Load() {
					lats[w] = append(lats[w], d)
				}
			}
		})
	}
	var t0 time.Time
	var cpu0 time.Duration
	select {
	case <-time.After(warmup):
		t0, cpu0 = time.Now(), cpuTime()
		measuring.Store(true)
		select {
		case <-time.After(duration):
		case <-ran:
		}
	case <-ran:
		t0, cpu0 = time.Now(), cpuTime()
	}
	stopped.Store(true)
	window, cpu := time.Since(t0), cpuTime()-cpu0
	wg.Wait()
	stop()

	r := result{lats: slices.Concat(lats...), window: window, cpu: cpu, errs: errs.Load(), errMsgs: errMsgs, exhausted: exhausted}
	// Every 202 must be a message in the stream: the proof that nothing was short-cut.
	n, err := st.stored()
	if err != nil {
		return r, fmt.Errorf("reading the stream: %w", err)
	}
	if n != uint64(ok.Load()) {
		r.errs++
		r.errMsgs = append(r.errMsgs, fmt.Sprintf("%d requests answered but %d messages stored", ok.Load(), n))
	}
	return r, nil
}
