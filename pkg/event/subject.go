package event

import "regexp"

// Kinds of registry events: the last token of registry.<source>.<kind>.
const (
	KindPush        = "push"
	KindDelete      = "delete"
	KindPull        = "pull"
	KindScan        = "scan"
	KindReplication = "replication"
	KindRetention   = "retention"
	KindQuota       = "quota"
)

// Kinds lists every registry event kind.
var Kinds = []string{KindPush, KindDelete, KindPull, KindScan, KindReplication, KindRetention, KindQuota}

// Subjects of the IMAGE stream.
const (
	SubjectImageInspected = "image.inspected"
	SubjectImageRejected  = "image.rejected"
	SubjectImageRebuilt   = "image.rebuilt"
	SubjectImagePromoted  = "image.promoted"
	SubjectImageBlocked   = "image.blocked"
	SubjectImagePruned    = "image.pruned"
)

var sourceName = regexp.MustCompile(`^[a-z0-9-]+$`)

// ValidSource reports whether name can be a source name, the middle token of registry.<source>.<kind>.
func ValidSource(name string) bool { return sourceName.MatchString(name) }

// RegistrySubject is the subject of a registry event: registry.<source>.<kind>.
func RegistrySubject(source, kind string) string {
	return "registry." + source + "." + kind
}

// DLQSubject is the subject a stage's poison messages go to: dlq.<stage>.
func DLQSubject(stage string) string { return "dlq." + stage }

// TaskSubject is the subject of the work a stage asks of itself (stream TASK): task.<stage>.
func TaskSubject(stage string) string { return "task." + stage }

// ValidKind reports whether kind is one of Kinds.
func ValidKind(kind string) bool {
	for _, k := range Kinds {
		if k == kind {
			return true
		}
	}
	return false
}
