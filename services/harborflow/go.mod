module github.com/harborflow/harborflow/services/harborflow

go 1.26.0

replace (
	github.com/harborflow/harborflow/pkg => ../../pkg
	github.com/harborflow/harborflow/proto => ../../proto
	github.com/harborflow/harborflow/services/receiver => ../receiver
)
