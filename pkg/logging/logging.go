// Package logging builds harborflow's zap logger and names the fields every stage logs with, so that one
// field means one thing across the system.
package logging

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Field names. Log with these constants, never with ad-hoc spellings.
const (
	FieldStage         = "stage"
	FieldSource        = "source"
	FieldKind          = "kind"
	FieldEventType     = "event_type"
	FieldEventID       = "event_id"
	FieldCorrelationID = "correlation_id"
	FieldSubject       = "subject"
	FieldStream        = "stream"
	FieldSequence      = "seq"
	FieldDeliveries    = "deliveries"
	FieldRepository    = "repository"
	FieldDigest        = "digest"
	FieldTag           = "tag"
	FieldReason        = "reason"
	FieldStatus        = "status"
	FieldRemote        = "remote"
	FieldPath          = "path"
	FieldDuration      = "duration"
	FieldDelay         = "delay"
	FieldRegistry      = "registry"
	FieldAddress       = "address"
	FieldConfigFile    = "config_file"
	FieldRecipe        = "recipe"
	FieldChain         = "chain"
	FieldKey           = "key"
	FieldStageTo       = "to_stage"
	FieldTags          = "tags"
	FieldBase          = "base"
	FieldBuild         = "build"
	FieldBuilder       = "builder"
	FieldUpdateLevel   = "update_level"
	FieldPlatforms     = "platforms"
	FieldHolder        = "holder"
	FieldBytesRead     = "bytes_read"
	FieldBytesWritten  = "bytes_written"
	FieldAttempt       = "attempt"
	FieldDeleted       = "deleted"
	FieldKept          = "kept"
	// FieldRetryLayer names the layer that retries a failed request or message: the registry client
	// ("registry_client") or the caller ("caller"; for a stage, the bus's back-off).
	FieldRetryLayer = "retry_layer"
)

// New returns a JSON logger at level (debug, info, warn, error) writing to stderr, or a console logger when
// development is true.
func New(level string, development bool) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("parsing log level %q: %w", level, err)
	}
	cfg := zap.NewProductionConfig()
	if development {
		cfg = zap.NewDevelopmentConfig()
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.DisableStacktrace = !development
	return cfg.Build()
}
