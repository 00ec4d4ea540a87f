module github.com/harborflow/harborflow/services/promoter

go 1.26.0

replace (
	github.com/harborflow/harborflow/pkg => ../../pkg
	github.com/harborflow/harborflow/proto => ../../proto
)
