// Package retention keeps the newest builds of each product version in a repository and deletes the rest,
// never what a rolling tag points to.
//
// It consumes image.promoted, image.rebuilt and image.inspected of the repositories its policies match (a
// run per repository, debounced) and its own task.retention (the schedule), plans, publishes the plan as
// image.pruned, and, unless the policy is a dry run, applies it: every deletion is recorded with the manifest,
// so that `harborflow retention restore` can put it back.
//
// The planner (plan.go) is pure: tags grouped by version line (pkg/imagetag: 4.2.0, 4.2.0-rocky), ordered by
// update level then build — never by push time —, the newest keep_per_version of each line kept, and nothing
// deleted that a protected tag points to, that a kept artifact refers to, that a promotion is working on, or
// that is younger than min_age. An accessory — an attestation under cosign's tag sha256-<hex>.att, which
// Harbor keeps as an artifact of its own — goes with its image, deleted only after it, never alone.
package retention
