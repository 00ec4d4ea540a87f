// Package promoter carries each image through a promotion chain (dev → staging → prod): it consumes
// image.rebuilt, image.inspected, registry.*.scan and its own task.promoter, evaluates the gates of the next stage on the exact digest
// (every platform of an index), copies the image there — the unique tag first, then each rolling tag, each
// verified — and publishes image.promoted or image.blocked with every gate's verdict.
//
// The gate evaluation is gate.go, the copier copy.go, the stage (consumer, state, outputs, re-evaluation)
// promoter.go, the destination repository's turn turn.go.
package promoter
