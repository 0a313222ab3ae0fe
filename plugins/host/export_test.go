package host

// SetTestHookVerified sets a function that runs after a binary passed its
// checksum and before it is started (nil: none).
func SetTestHookVerified(f func(path string)) { testHookVerified = f }
