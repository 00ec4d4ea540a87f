package registry

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapHandler passes regclient's slog records to the client's zap logger. regclient's Info is library chatter
// and becomes Debug; its trace level (every request with its headers) is dropped.
type zapHandler struct {
	log    *zap.Logger
	prefix string // group prefix for attribute keys
}

func newSlog(log *zap.Logger) *slog.Logger {
	return slog.New(&zapHandler{log: log.Named("regclient")})
}

func zapLevel(l slog.Level) (zapcore.Level, bool) {
	switch {
	case l < slog.LevelDebug:
		return 0, false
	case l < slog.LevelWarn:
		return zapcore.DebugLevel, true
	case l < slog.LevelError:
		return zapcore.WarnLevel, true
	}
	return zapcore.ErrorLevel, true
}

func (h *zapHandler) Enabled(_ context.Context, l slog.Level) bool {
	zl, ok := zapLevel(l)
	return ok && h.log.Core().Enabled(zl)
}

func (h *zapHandler) Handle(_ context.Context, r slog.Record) error {
	zl, ok := zapLevel(r.Level)
	if !ok {
		return nil
	}
	ce := h.log.Check(zl, r.Message)
	if ce == nil {
		return nil
	}
	fields := make([]zap.Field, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, h.field(a))
		return true
	})
	ce.Write(fields...)
	return nil
}

func (h *zapHandler) field(a slog.Attr) zap.Field {
	return zap.Any(h.prefix+a.Key, a.Value.Resolve().Any())
}

func (h *zapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := make([]zap.Field, 0, len(attrs))
	for _, a := range attrs {
		fields = append(fields, h.field(a))
	}
	return &zapHandler{log: h.log.With(fields...), prefix: h.prefix}
}

func (h *zapHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &zapHandler{log: h.log, prefix: h.prefix + name + "."}
}
