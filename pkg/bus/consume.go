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
// shortly before the consumer's AckWait, and when the consumer is stopped.
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

// handBackDelay is how long a message handed back on Stop waits before its redelivery. Stop unsubscribes
// asynchronously; redelivered at once, the message could reach this consumer's last pull request before the
// unsubscription does, be handed back again, and use up a delivery each time.
const handBackDelay = time.Second

// stageName is what a durable consumer name and the last token of dlq.<stage> may be.
var stageName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ConsumerConfig describes a stage's durable pull consumer. Zero values take the defaults.
type ConsumerConfig struct {
	// Stage names the durable consumer, shared by every replica of the stage, and its DLQ subject dlq.<Stage>.
	Stage string
	// Stream is the stream the stage reads: event.StreamRegistry or event.StreamImage.
	Stream string
	// FilterSubjects are the subjects of Stream the stage handles; empty means all of them.
	FilterSubjects []string
	// MaxDeliver is how many deliveries a message gets before the stage gives up and dead-letters it
	// (default 5).
	MaxDeliver int
	// BackOff is the delay before redelivering a message whose n-th delivery failed: BackOff[min(n-1,
	// len(BackOff)-1)] (default 1s, 5s, 30s, 2m).
	BackOff []time.Duration
	// AckWait is how long the server waits for a delivered message to be settled before it redelivers it
	// (default 30s). A handler's context ends a tenth of it earlier.
	AckWait time.Duration
	// MaxAckPending bounds the messages delivered and not yet settled, across all replicas (default 64).
	MaxAckPending int
	// Concurrency is how many handlers run at once in this process (default 1).
	Concurrency int
	// HandlerTimeout lets a handler run longer than AckWait (a build, say): its context ends after
	// HandlerTimeout, and while it runs the runner tells the server the message is in progress every third of
	// AckWait, so that a crash is still noticed within AckWait. Zero: the handler's context ends a tenth of
	// AckWait before AckWait.
	HandlerTimeout time.Duration
}

func (c *ConsumerConfig) setDefaults() {
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
	if c.Stream == "" {
		errs = append(errs, errors.New("stream is empty"))
	}
	for _, s := range c.FilterSubjects {
		if s == "" {
			errs = append(errs, errors.New("a filter subject is empty"))
		}
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

// backOff is the delay before redelivering a message whose delivery-th delivery failed.
func (c *ConsumerConfig) backOff(delivery uint64) time.Duration {
	i := int(min(max(delivery, 1)-1, uint64(len(c.BackOff)-1)))
	return c.BackOff[i]
}

// Consumer runs a stage's handler on its durable consumer. Stop it with Drain (graceful) or Stop.
type Consumer struct {
	bus     *Bus
	cfg     ConsumerConfig
	handler HandlerFunc
	log     *zap.Logger
	cc      jetstream.ConsumeContext

	// base is the runner's own context, not a caller's: every handler context derives from it, and Stop
	// cancels it.
	base   context.Context
	cancel context.CancelFunc

	slots     chan struct{} // one per running handler
	running   sync.WaitGroup
	done      chan struct{} // closed when consuming has ended and every handler has returned
	drainOnce sync.Once
	stopOnce  sync.Once
}

// Consume creates the stage's durable pull consumer on cfg.Stream, or updates it to cfg, and runs h on its
// messages, cfg.Concurrency at a time, until Drain or Stop. ctx bounds the setup only.
//
// The consumer delivers every message of the filter subjects from the start of the stream, with explicit
// acks. Each result of h becomes one action:
//
//   - nil: publish the outputs with Publish (each output without a correlation id gets the input's), and
//     only when all are stored, ack and wait for the server to confirm the ack.
//   - an error marked with Permanent, or a panic: publish DeadLetter(stage, reason, input) to dlq.<stage>, and
//     only when it is stored, term the input with the reason.
//   - any other error: nak with the delay requested with Retry, or else the back-off of this delivery; on
//     delivery MaxDeliver, dead-letter with the reason "gave up after N deliveries: <error>".
//   - any error while the consumer is stopping: nak, so that another replica or the next start takes the
//     message a second later; this is not counted as a failure.
//
// A failed publish of an output or of the dead letter naks with back-off: nothing is dropped. The server
// itself never gives up on a message (its MaxDeliver is unlimited): the runner enforces cfg.MaxDeliver, and
// dead-letters, without running h, a message delivered again after its last allowed delivery ended unsettled
// (the stage stopped or crashed during it). So a nak on the last delivery cannot strand a message, and a message
// that crashes the process cannot loop for ever. cfg.BackOff is not set on the server consumer: JetStream would
// use it in place of AckWait, giving a handler BackOff[0] before a redelivery.
func (b *Bus) Consume(ctx context.Context, cfg ConsumerConfig, h HandlerFunc) (*Consumer, error) {
	if h == nil {
		return nil, fmt.Errorf("consumer %q: nil handler", cfg.Stage)
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	jc, err := b.js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:        cfg.Stage,
		Description:    "harborflow stage " + cfg.Stage,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  cfg.MaxAckPending,
		FilterSubjects: cfg.FilterSubjects,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %q on stream %q: %w", cfg.Stage, cfg.Stream, err)
	}
	base, cancel := context.WithCancel(context.Background())
	c := &Consumer{
		bus:     b,
		cfg:     cfg,
		handler: h,
		log:     b.log.With(zap.String(logging.FieldStage, cfg.Stage)),
		base:    base,
		cancel:  cancel,
		slots:   make(chan struct{}, cfg.Concurrency),
		done:    make(chan struct{}),
	}
	cc, err := jc.Consume(c.receive,
		// Buffer no more than the handlers can take: a buffered message's ack wait is already running.
		jetstream.PullMaxMessages(cfg.Concurrency),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			c.log.Warn("consumer error", zap.String(logging.FieldStream, cfg.Stream), zap.Error(err))
		}),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("consuming %q from stream %q: %w", cfg.Stage, cfg.Stream, err)
	}
	c.cc = cc
	closed := cc.Closed()
	go func() {
		// The subscription calls receive, which adds to running, only before closed is closed.
		<-closed
		c.running.Wait()
		close(c.done)
	}()
	return c, nil
}

// Drain stops fetching messages, lets the handlers finish the messages already delivered (and settle them),
// and returns when they have. If ctx ends first, Drain stops the consumer as Stop does and returns ctx's
// error. Drain may be called more than once, and after Stop, to wait for the handlers to return.
func (c *Consumer) Drain(ctx context.Context) error {
	c.drainOnce.Do(c.cc.Drain)
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-c.done:
		return nil
	default:
	}
	c.Stop()
	return fmt.Errorf("draining consumer %q: %w", c.cfg.Stage, ctx.Err())
}

// Stop stops fetching messages and cancels the handlers' contexts, at once: messages not yet handled are
// handed back with a nak, and so are those whose handler returns an error because of the cancellation; they
// are redelivered a second later. Stop does not wait for the handlers to return; Drain does.
func (c *Consumer) Stop() {
	c.stopOnce.Do(func() {
		c.cancel()
		c.cc.Stop()
	})
}

// receive is called by the subscription, one message at a time; it blocks while every handler slot is taken,
// which holds back the next pull.
func (c *Consumer) receive(jm jetstream.Msg) {
	if c.base.Err() == nil {
		select {
		case c.slots <- struct{}{}:
			c.running.Add(1)
			go func() {
				defer c.running.Done()
				defer func() { <-c.slots }()
				c.handle(jm)
			}()
			return
		case <-c.base.Done():
		}
	}
	// Stopped: hand the message back, to another replica or the next start.
	if err := jm.NakWithDelay(handBackDelay); err != nil {
		c.log.Debug("handing back a message on stop", zap.String(logging.FieldSubject, jm.Subject()), zap.Error(err))
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
	log = log.With(zap.Duration(logging.FieldDuration, time.Since(start)))
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
	case c.base.Err() != nil:
		log.Info("stopping: handing the message back", zap.Error(err))
		c.nakWithDelay(jm, log, handBackDelay)
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
	ctx, cancel := context.WithTimeout(c.base, timeout)
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
		log.Debug("not ready yet; retrying later", zap.Duration(logging.FieldDelay, delay), zap.Error(err))
	} else {
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
// message's ack wait.
func (c *Consumer) settleContext(jm jetstream.Msg) (context.Context, context.CancelFunc) {
	_ = jm.InProgress()
	return context.WithTimeout(c.base, c.cfg.AckWait)
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
