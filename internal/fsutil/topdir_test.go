package fsutil

import (
	"os"
	"testing"
)

func TestSpreadDirs(t *testing.T) {
	dir := t.TempDir()
	if _, supported := HasSpreadFlag(dir); !supported {
		t.Skipf("%s: not ext2/3/4, which alone honour the flag", dir)
	}
	if os.Geteuid() != 0 {
		t.Skip("setting FS_TOPDIR_FL needs root on some kernels")
	}
	if marked, _ := HasSpreadFlag(dir); marked {
		t.Fatalf("%s is marked before SpreadDirs", dir)
	}
	SpreadDirs(dir)
	if marked, _ := HasSpreadFlag(dir); !marked {
		t.Fatalf("SpreadDirs(%s) left the directory without FS_TOPDIR_FL", dir)
	}
	// A missing directory is not an error, and is tried again later.
	missing := dir + "/later"
	SpreadDirs(missing)
	if err := os.Mkdir(missing, 0o700); err != nil {
		t.Fatal(err)
	}
	SpreadDirs(missing)
	if marked, _ := HasSpreadFlag(missing); !marked {
		t.Errorf("SpreadDirs of a directory made after a first failed try did not mark it")
	}
}
