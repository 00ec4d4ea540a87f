// Package harborflow is the single harborflow binary: `harborflow run` runs every stage in one process (with
// an embedded NATS JetStream server unless nats.url names one), and the operational commands — events,
// status, config check — look at a running system.
package harborflow
