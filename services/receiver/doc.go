// Package receiver is the webhook intake of harborflow.
//
// It consumes HTTP webhooks — Harbor's Default and CloudEvents payloads on POST /webhooks/harbor/{source},
// CNCF distribution notification envelopes on POST /webhooks/distribution/{source} — and publishes one
// RegistryEvent per registry event to registry.<source>.<kind> in the REGISTRY stream. A webhook is answered
// 202 only after JetStream stored every event it carried; 503 when one could not be stored, so the sender
// retries, and the content-derived message id folds the retry into the stored copy. Distribution events it
// cannot use are copied to dlq.receiver with the reason and still answered 202, because a registry retries a
// refused delivery for ever.
package receiver
