package testutil

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// InPrivateMountNS runs fn on a thread of its own in a new, private mount
// namespace. The thread is never unlocked, so Go ends it when fn returns:
// the namespace, and every mount fn left in it, goes with it whatever fn
// did. fn reports failures with t.Error and returns.
func InPrivateMountNS(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Errorf("make / private: %v", err)
			return
		}
		fn()
	}()
	<-done
}
