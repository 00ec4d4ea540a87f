module github.com/harborflow/harborflow/services/retention

go 1.26.0

replace (
	github.com/harborflow/harborflow/pkg => ../../pkg
	github.com/harborflow/harborflow/proto => ../../proto
)

require github.com/harborflow/harborflow/pkg v0.0.0-00010101000000-000000000000
