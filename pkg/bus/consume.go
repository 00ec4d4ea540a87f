package bus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/logging"
)

// HandlerFunc handles one input message of a stage and returns the messages it causes, which the runner
// publishes before it acks the input (watermill's HandlerFunc). It never acks, naks or publishes itself. Its
// error decides what happens to the input: see Permanent and Retry. Outputs returned together with an error
// are published before the input is retried or dead-lettered: the part of the work that was done.
//
// A message may be delivered more than once (a redelivery after a crash, a duplicate event), so a handler must
// be idempotent, and its outputs should carry a content-derived ID so that JetStream stores each once. ctx ends
// shortly before the consumer's AckWait (or after HandlerTimeout), and when Shutdown's grace is over: a handler
// returns promptly then, and its message is handed back.
type HandlerFunc func(ctx context.Context, m *Message) ([]*Message, error)

// Defaults of ConsumerConfig.
const (
	defaultMaxDeliver    = 5
	defaultAckWait       = 30 * time.Second
	defaultMaxAckPending = 64
	defaultConcurrency   = 1
)

// defaultBackOff is the delay before the 2nd, 3rd, 4th and later deliveries of a failed message.
func defaultBackOff() []time.Duration {
	return []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
}

// cancelWait bounds how long Shutdown waits for the handlers to return after it cancelled their contexts. A
// handler that honours its context returns within milliseconds (a buildah build within about a second); one
// that does not is reported, not waited for. It is shorter than the 2 s a process gives its stages after the
// grace (harborflow's cancelBound), so that this report, naming the stage, is what the process logs.
const cancelWait = 1500 * time.Millisecond

// stageName is what a durable consumer name and the last token of dlq.<stage> may be.
var stageName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ConsumerConfig describes a stage's durable pull consumer. Zero values take the defaults.
type ConsumerConfig struct {
	// Stage names the stage: its DLQ subject dlq.<Stage>, and the stage field of its logs and label of its
	// metrics.
	Stage string
	// Durable names the durable consumer, shared by every replica of the stage (default: Stage). Two
	// consumers with different durable names each get every message; replicas with the same one split them.
	Durable string
	// Subjects are the subjects (wildcards allowed) the stage handles. They may lie in several streams
	// (image.inspected and registry.*.scan): each subject's stream is found from event.Streams, and the
	// consumer is one durable consumer per stream, all called Durable, all feeding the one handler.
	Subjects []string
	// MaxDeliver is how many deliveries a message gets before the stage gives up and dead-letters it
	// (default 5).
	MaxDeliver int
	// BackOff is the delay before redelivering a message whose n-th delivery failed: BackOff[min(n-1,
	// len(BackOff)-1)] (default 1s, 5s, 30s, 2m).
	BackOff []time.Duration
	// AckWait is how long the server waits for a delivered message to be settled before it redelivers it
	// (default 30s). A handler's context ends a tenth of it earlier.
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet settled, across all replicas, per stream
	// (default 64).
	MaxAckPending int
	// Concurrency is how many handlers run at once in this process, over all the streams (default 1).
	Concurrency int
	// HandlerTimeout lets a handler run longer than AckWait (a build, say): its context ends after
	// HandlerTimeout, and while it runs the runner tells the server the message is in progress every third of
	// AckWait, so that a crash is still noticed within AckWait. Zero: the handler's context ends a tenth of
	// AckWait before AckWait.
	HandlerTimeout time.Duration
}

func (c *ConsumerConfig) setDefaults() {
	if c.Durable == "" {
		c.Durable = c.Stage
	}
	c.Subjects = slices.Clone(c.Subjects)
	if c.MaxDeliver == 0 {
		c.MaxDeliver = defaultMaxDeliver
	}
	if len(c.BackOff) == 0 {
		c.BackOff = defaultBackOff()
	} else {
		c.BackOff = slices.Clone(c.BackOff)
	}
	if c.AckWait == 0 {
		c.AckWait = defaultAckWait
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = defaultMaxAckPending
	}
	if c.Concurrency == 0 {
		c.Concurrency = defaultConcurrency
	}
}

// Validate returns an error when c cannot describe a consumer. Zero values are valid: they take the defaults.
func (c ConsumerConfig) Validate() error {
	var errs []error
	if !stageName.MatchString(c.Stage) {
		errs = append(errs, fmt.Errorf("stage %q must match %s", c.Stage, stageName))
	}
	if c.Durable != "" && !stageName.MatchString(c.Durable) {
		errs = append(errs, fmt.Errorf("durable %q must match %s", c.Durable, stageName))
	}
	if len(c.Subjects) == 0 {
		errs = append(errs, errors.New("no subjects"))
	}
	if _, err := c.streams(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxDeliver < 0 {
		errs = append(errs, fmt.Errorf("max deliver %d is negative", c.MaxDeliver))
	}
	for _, d := range c.BackOff {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("back-off %s is not positive", d))
		}
	}
	if c.AckWait < 0 {
		errs = append(errs, fmt.Errorf("ack wait %s is negative", c.AckWait))
	}
	if c.MaxAckPending < 0 {
		errs = append(errs, fmt.Errorf("max ack pending %d is negative", c.MaxAckPending))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d is negative", c.Concurrency))
	}
	if c.HandlerTimeout < 0 {
		errs = append(errs, fmt.Errorf("handler timeout %s is negative", c.HandlerTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consumer %q: %w", c.Stage, err)
	}
	return nil
}

// streams groups the subjects by the stream that holds them, in the order of event.Streams.
func (c ConsumerConfig) streams() ([]streamSubjects, error) {
	var out []streamSubjects
	var errs []error
	for _, subject := range c.Subjects {
		stream, err := streamOf(subject)
		if err != nil {
			errs = append(errs, fmt.Errorf("subject %w", err))
			continue
		}
		i := slices.IndexFunc(out, func(s streamSubjects) bool { return s.stream == stream })
		if i < 0 {
			out = append(out, streamSubjects{stream: stream})
			i = len(out) - 1
		}
		if !slices.Contains(out[i].subjects, subject) {
			out[i].subjects = append(out[i].subjects, subject)
		}
	}
	return out, errors.Join(errs...)
}

type streamSubjects struct {
	stream   string
	subjects []string
}

// backOff is the delay before redelivering a message whose delivery-th delivery failed.
func (c *ConsumerConfig) backOff(delivery uint64) time.Duration {
	i := int(min(max(delivery, 1)-1, uint64(len(c.BackOff)-1)))
	return c.BackOff[i]
}

// Consumer runs a stage's handler on its durable consumers, one per stream. Stop it with Shutdown.
type Consumer struct {
	bus     *Bus
	cfg     ConsumerConfig
	handler HandlerFunc
	log     *zap.Logger
	subs    []subscription

	// handlers is the runner's own context, not a caller's: every handler context derives from it, and
	// Shutdown cancels it when the grace is over.
	handlers       context.Context
	cancelHandlers context.CancelFunc
	// settling bounds publishing outputs and settling messages; Shutdown cancels it only when it gives up
	// on handlers that do not return.
	settling context.Context
	abandon  context.CancelFunc

	intake       chan struct{} // closed when Shutdown starts: no handler starts after it
	intakeClosed chan struct{} // closed when every subscription has ended, its unsubscription sent first
	slots        chan struct{} // one per running handler
	running      sync.WaitGroup
	done         chan struct{} // closed when intake has closed and every handler has returned
	stopOnce     sync.Once
	finishOnce   sync.Once

	metrics *metrics
	info    *infoCollector // nil when not registered
}

// subscription is the consumer on one stream.
type subscription struct {
	stream string
	jc     jetstream.Consumer
	cc     jetstream.ConsumeContext
}

// Consume creates the stage's durable pull consumers, one per stream of cfg.Subjects, or updates them to cfg,
// and runs h on their messages, cfg.Concurrency at a time over all streams, until Shutdown. ctx bounds the
// setup only.
//
// The consumers deliver every message of the subjects from the start of each stream, with explicit acks. Each
// result of h becomes one action:
//
//   - nil: publish the outputs with Publish (each output without a correlation id gets the input's), and
//     only when all are stored, ack and wait for the server to confirm the ack.
//   - an error marked with Permanent, or a panic: publish DeadLetter(stage, reason, input) to dlq.<stage>, and
//     only when it is stored, term the input with the reason.
//   - any other error: nak with the delay requested with Retry, or else the back-off of this delivery; on
//     delivery MaxDeliver, dead-letter with the reason "gave up after N deliveries: <error>".
//   - any error after Shutdown cancelled the handler: hand the message back with a nak, so that another
//     replica or the next start takes it at once; this is not counted as a failure.
//
// A failed publish of an output or of the dead letter naks with back-off: nothing is dropped. The server
// itself never gives up on a message (its MaxDeliver is unlimited): the runner enforces cfg.MaxDeliver, and
// dead-letters, without running h, a message delivered again after its last allowed delivery ended unsettled
// (the stage stopped or crashed during it). So a nak on the last delivery cannot strand a message, and a message
// that crashes the process cannot loop for ever. cfg.BackOff is not set on the server consumer: JetStream would
// use it in place of AckWait, giving a handler BackOff[0] before a redelivery.
//
// With a metrics registry (WithMetrics), the consumer counts its messages by outcome and times its handler,
// and reports its consumers' pending and redelivered messages at each scrape.
func (b *Bus) Consume(ctx context.Context, cfg ConsumerConfig, h HandlerFunc) (*Consumer, error) {
	if h == nil {
		return nil, fmt.Errorf("consumer %q: nil handler", cfg.Stage)
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	streams, _ := cfg.streams()
	handlers, cancelHandlers := context.WithCancel(context.Background())
	settling, abandon := context.WithCancel(context.Background())
	c := &Consumer{
		bus:            b,
		cfg:            cfg,
		handler:        h,
		log:            b.log.With(zap.String(logging.FieldStage, cfg.Stage)),
		handlers:       handlers,
		cancelHandlers: cancelHandlers,
		settling:       settling,
		abandon:        abandon,
		intake:         make(chan struct{}),
		intakeClosed:   make(chan struct{}),
		slots:          make(chan struct{}, cfg.Concurrency),
		done:           make(chan struct{}),
		metrics:        b.metrics,
	}
	fail := func(err error) (*Consumer, error) {
		for _, s := range c.subs {
			s.cc.Stop()
		}
		cancelHandlers()
		abandon()
		return nil, err
	}
	for _, s := range streams {
		jc, err := b.js.CreateOrUpdateConsumer(ctx, s.stream, jetstream.ConsumerConfig{
			Durable:        cfg.Durable,
			Description:    "harborflow stage " + cfg.Stage,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        cfg.AckWait,
			MaxDeliver:     -1,
			MaxAckPending:  cfg.MaxAckPending,
			FilterSubjects: s.subjects,
		})
		if err != nil {
			return fail(fmt.Errorf("creating consumer %q on stream %s: %w", cfg.Durable, s.stream, err))
		}
		stream := s.stream
		cc, err := jc.Consume(c.receive,
			// Buffer no more than the handlers can take: a buffered message's ack wait is already running.
			jetstream.PullMaxMessages(cfg.Concurrency),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				c.log.Warn("consumer error", zap.String(logging.FieldStream, stream), zap.Error(err))
			}),
		)
		if err != nil {
			return fail(fmt.Errorf("consuming %q from stream %s: %w", cfg.Durable, s.stream, err))
		}
		c.subs = append(c.subs, subscription{stream: s.stream, jc: jc, cc: cc})
	}
	closed := make([]<-chan struct{}, len(c.subs))
	for i, s := range c.subs {
		closed[i] = s.cc.Closed()
	}
	go func() {
		// A subscription calls receive, which adds to running, only before its closed channel is closed.
		for _, ch := range closed {
			<-ch
		}
		close(c.intakeClosed)
		c.running.Wait()
		close(c.done)
	}()
	c.info = c.registerInfo()
	return c, nil
}

// Shutdown stops the consumer. It stops intake at once: no handler starts after it, and messages delivered to
// this process but not yet handled are handed back. It lets running handlers finish until ctx ends (ctx's
// deadline is the grace), then cancels their contexts; a handler that then returns an error has its message
// handed back too. A message handed back is nak'ed without a delay, so another replica, or the next start,
// gets it at once rather than after AckWait. Shutdown returns when every handler has returned and its message
// is settled (acked, dead-lettered, retried or handed back): nil, also when handlers had to be cancelled, since
// that is what a shutdown does. It returns an error only when handlers did not return within a few seconds of
// their cancellation; their messages are redelivered after AckWait.
//
// Shutdown may be called more than once, from any goroutine; a later call waits again.
func (c *Consumer) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() {
		close(c.intake)
		// Drain rather than stop: messages the client has buffered come to receive, which hands them back,
		// instead of being dropped and waiting out their ack wait on the server.
		for _, s := range c.subs {
			s.cc.Drain()
		}
	})
	select {
	case <-c.done:
		return c.finish()
	case <-ctx.Done():
	}
	c.cancelHandlers()
	t := time.NewTimer(cancelWait)
	defer t.Stop()
	select {
	case <-c.done:
		return c.finish()
	case <-t.C:
	}
	_ = c.finish()
	return fmt.Errorf("shutting down consumer %q: %d handlers still running %s after their cancellation", c.cfg.Stage,
		len(c.slots), cancelWait)
}

// finish releases what the consumer holds once it has stopped.
func (c *Consumer) finish() error {
	c.finishOnce.Do(func() {
		c.cancelHandlers()
		c.abandon()
		c.unregisterInfo()
	})
	return nil
}

// Info returns the state of the consumer on each of its streams.
func (c *Consumer) Info(ctx context.Context) ([]ConsumerInfo, error) {
	out := make([]ConsumerInfo, 0, len(c.subs))
	for _, s := range c.subs {
		info, err := infoOf(ctx, s.jc)
		if err != nil {
			return nil, err
		}
		out = append(out, *info)
	}
	return out, nil
}

// receive is called by a subscription, one message at a time; it blocks while every handler slot is taken,
// which holds back the subscription's next pull.
func (c *Consumer) receive(jm jetstream.Msg) {
	select {
	case <-c.intake:
	default:
		select {
		case c.slots <- struct{}{}:
			select {
			case <-c.intake:
				// Shutdown started while this waited for a slot: start nothing new.
				<-c.slots
			default:
				c.running.Add(1)
				go func() {
					defer c.running.Done()
					defer func() { <-c.slots }()
					c.handle(jm)
				}()
				return
			}
		case <-c.intake:
		}
	}
	// Stopped: hand the message back, to another replica or the next start.
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		c.handBack(jm, c.log.With(zap.String(logging.FieldSubject, jm.Subject())), nil)
	}()
}

// handBack naks a message without a delay once intake has closed, so that another replica or the next start
// takes it at once.
//
// It waits for intake to close first: a subscription's unsubscription is sent asynchronously after Shutdown
// asks for it, and a message nak'ed before the server sees that unsubscription could be redelivered to this
// consumer's own pull request, handed back again, and use up a delivery each time. Once every subscription has
// closed, its unsubscription went out on this connection ahead of the nak, and the server, which handles a
// connection's messages in order, no longer delivers to it (a delivery it finds no interest for is queued again
// at once). So no delay is needed.
func (c *Consumer) handBack(jm jetstream.Msg, log *zap.Logger, cause error) {
	select {
	case <-c.intakeClosed:
	case <-c.settling.Done():
	}
	c.metrics.count(c.cfg.Stage, outcomeHandedBack)
	if cause != nil {
		log.Info("stopping: handing the message back", zap.Error(cause))
	}
	if err := jm.Nak(); err != nil {
		log.Warn("handing the message back failed; it is redelivered after the ack wait", zap.Error(err))
	}
}

// handle runs the handler on one message and settles it.
func (c *Consumer) handle(jm jetstream.Msg) {
	md, err := jm.Metadata()
	if err != nil {
		// Not a consumer delivery: there is nothing to ack, nak or term.
		c.log.Error("reading message metadata", zap.String(logging.FieldSubject, jm.Subject()), zap.Error(err))
		return
	}
	in := consumed(jm, md)
	log := c.log.With(
		zap.String(logging.FieldSubject, in.Subject),
		zap.String(logging.FieldStream, in.Stream),
		zap.Uint64(logging.FieldSequence, in.Sequence),
		zap.Uint64(logging.FieldDeliveries, in.Deliveries),
		zap.String(logging.FieldEventID, in.ID),
		zap.String(logging.FieldCorrelationID, in.CorrelationID()),
	)
	if in.Deliveries > uint64(c.cfg.MaxDeliver) {
		c.deadLetter(jm, md, log, nil, fmt.Sprintf(
			"gave up after %d deliveries: the last one was not settled (the stage stopped or crashed while handling it)",
			in.Deliveries-1))
		return
	}
	// The message may have waited in the client's buffer: restart its ack wait for the handler.
	_ = jm.InProgress()
	start := time.Now()
	outs, err := c.run(jm, in)
	took := time.Since(start)
	c.metrics.observe(c.cfg.Stage, took)
	log = log.With(zap.Duration(logging.FieldDuration, took))
	if err != nil && len(outs) > 0 {
		// Outputs the handler finished before it failed (one recipe of several, say) are stored first.
		if perr := c.publish(jm, outs); perr != nil {
			c.retry(jm, md, log, perr)
			return
		}
	}
	switch {
	case err == nil:
		c.succeed(jm, md, log, outs)
	case IsPermanent(err):
		c.deadLetter(jm, md, log, err, err.Error())
	case c.handlers.Err() != nil:
		c.handBack(jm, log, err)
	default:
		c.retry(jm, md, log, err)
	}
}

// run calls the handler with a context that ends before the ack wait (or after HandlerTimeout, with the
// message kept in progress meanwhile), and turns a panic into a permanent error.
func (c *Consumer) run(jm jetstream.Msg, in *Message) (outs []*Message, err error) {
	timeout := c.cfg.AckWait - c.cfg.AckWait/10
	if c.cfg.HandlerTimeout > 0 {
		timeout = c.cfg.HandlerTimeout
	}
	ctx, cancel := context.WithTimeout(c.handlers, timeout)
	defer cancel()
	if c.cfg.HandlerTimeout > 0 {
		beat := time.NewTicker(c.cfg.AckWait / 3)
		defer beat.Stop()
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-beat.C:
					_ = jm.InProgress()
				}
			}
		}()
	}
	defer func() {
		if r := recover(); r != nil {
			outs, err = nil, Permanent(&panicError{value: r, stack: debug.Stack()})
		}
	}()
	return c.handler(ctx, in)
}

// succeed publishes the outputs, then acks.
func (c *Consumer) succeed(jm jetstream.Msg, md *jetstream.MsgMetadata, log *zap.Logger, outs []*Message) {
	if err := c.publish(jm, outs); err != nil {
		c.retry(jm, md, log, err)
		return
	}
	ctx, cancel := c.settleContext(jm)
	defer cancel()
	if err := jm.DoubleAck(ctx); err != nil {
		log.Warn("acknowledging failed; the message is redelivered after the ack wait", zap.Error(err))
		return
	}
	c.metrics.count(c.cfg.Stage, outcomeHandled)
	log.Debug("handled")
}

// publish stores the outputs of jm's handler, each with jm's correlation id unless it has its own.
func (c *Consumer) publish(jm jetstream.Msg, outs []*Message) error {
	ctx, cancel := c.settleContext(jm)
	defer cancel()
	correlationID := jm.Headers().Get(event.HeaderCorrelationID)
	for _, out := range outs {
		if out == nil {
			continue
		}
		if correlationID != "" && out.CorrelationID() == "" {
			if out.Header == nil {
				out.Header = nats.Header{}
			}
			out.Header.Set(event.HeaderCorrelationID, correlationID)
		}
		if _, err := c.bus.Publish(ctx, out); err != nil {
			return fmt.Errorf("publishing output: %w", err)
		}
	}
	return nil
}

// retry naks with a delay, or dead-letters on the last allowed delivery.
func (c *Consumer) retry(jm jetstream.Msg, md *jetstream.MsgMetadata, log *zap.Logger, err error) {
	if md.NumDelivered >= uint64(c.cfg.MaxDeliver) {
		c.deadLetter(jm, md, log, err, fmt.Sprintf("gave up after %d deliveries: %v", md.NumDelivered, err))
		return
	}
	delay, ok := retryAfter(err)
	if !ok {
		delay = c.cfg.backOff(md.NumDelivered)
	}
	if expectedWait(err) {
		c.metrics.count(c.cfg.Stage, outcomeWaiting)
		log.Debug("not ready yet; retrying later", zap.Duration(logging.FieldDelay, delay), zap.Error(err))
	} else {
		c.metrics.count(c.cfg.Stage, outcomeRetried)
		log.Warn("handling failed; retrying after the back-off", zap.Duration(logging.FieldDelay, delay), zap.Error(err))
	}
	c.nakWithDelay(jm, log, delay)
}

// deadLetter copies the message to dlq.<stage> with reason and, once that is stored, terms it. cause, if not
// nil, is logged with it.
func (c *Consumer) deadLetter(jm jetstream.Msg, md *jetstream.MsgMetadata, log *zap.Logger, cause error, reason string) {
	reason = oneLine(reason)
	ctx, cancel := c.settleContext(jm)
	defer cancel()
	// The handler may have changed its copy of the message: dead-letter what was delivered.
	if _, err := c.bus.Publish(ctx, DeadLetter(c.cfg.Stage, reason, consumed(jm, md))); err != nil {
		log.Error("dead-lettering failed; retrying", zap.String(logging.FieldReason, reason), zap.Error(err))
		c.nakWithDelay(jm, log, c.cfg.backOff(md.NumDelivered))
		return
	}
	fields := []zap.Field{zap.String(logging.FieldReason, reason), zap.Error(cause)}
	if p := (*panicError)(nil); errors.As(cause, &p) {
		fields = append(fields, zap.ByteString("stacktrace", p.stack))
	}
	c.metrics.count(c.cfg.Stage, outcomeDeadLettered)
	log.Error("dead-lettered", fields...)
	if err := jm.TermWithReason(reason); err != nil {
		// Redelivered later, it is dead-lettered again under the same id, which the DLQ stores once.
		log.Warn("terminating the dead-lettered message failed", zap.Error(err))
	}
}

func (c *Consumer) nakWithDelay(jm jetstream.Msg, log *zap.Logger, delay time.Duration) {
	if err := jm.NakWithDelay(delay); err != nil {
		log.Warn("nak failed; the message is redelivered after the ack wait", zap.Error(err))
	}
}

// settleContext bounds publishing outputs or the dead letter and settling the message, after restarting the
// message's ack wait. It does not end when the handlers are cancelled: a handler that finished its work as
// the grace ran out still has its outputs stored and its message acked.
func (c *Consumer) settleContext(jm jetstream.Msg) (context.Context, context.CancelFunc) {
	_ = jm.InProgress()
	return context.WithTimeout(c.settling, c.cfg.AckWait)
}

// consumed returns a delivered message as a Message, with its own copy of the headers and body.
func consumed(jm jetstream.Msg, md *jetstream.MsgMetadata) *Message {
	h := make(nats.Header, len(jm.Headers()))
	for k, v := range jm.Headers() {
		h[k] = slices.Clone(v)
	}
	return &Message{
		Subject:    jm.Subject(),
		ID:         h.Get(event.HeaderMsgID),
		Header:     h,
		Data:       slices.Clone(jm.Data()),
		Stream:     md.Stream,
		Sequence:   md.Sequence.Stream,
		Time:       md.Timestamp,
		Deliveries: md.NumDelivered,
	}
}

// panicError is a recovered handler panic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.value) }

// oneLine keeps a reason on one line: it becomes a header value, where a line break would end the header.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}
