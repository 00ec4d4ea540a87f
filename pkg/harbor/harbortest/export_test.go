package harbortest

// WithEventHook sees every event the stand-in hands the notifier, with the policy it is for, before the
// notifier does: tests assert on events while the notifier's deliveries are built elsewhere.
func WithEventHook(hook func(policyID int64, ev Event)) Option {
	return func(o *options) { o.eventHook = hook }
}
