module github.com/harborflow/harborflow/services/harborflow

go 1.26.0

replace (
	github.com/harborflow/harborflow/pkg => ../../pkg
	github.com/harborflow/harborflow/proto => ../../proto
	github.com/harborflow/harborflow/services/receiver => ../receiver
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
)
