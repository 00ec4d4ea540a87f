package buildahtest

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// overlayMountable mounts an overlay file system in dir (made and removed here) and unmounts it again: what
// buildah's overlay driver does for every container.
func overlayMountable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	defer os.RemoveAll(dir)
	d := map[string]string{}
	for _, name := range []string{"lower", "upper", "work", "merged"} {
		d[name] = filepath.Join(dir, name)
		if err := os.Mkdir(d[name], 0o700); err != nil {
			return fmt.Errorf("making %s: %w", d[name], err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", d["lower"], d["upper"], d["work"])
	if err := syscall.Mount("overlay", d["merged"], "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount -t overlay on %s (uid %d): %w", d["merged"], os.Getuid(), err)
	}
	if err := syscall.Unmount(d["merged"], 0); err != nil {
		return fmt.Errorf("unmounting the overlay %s: %w", d["merged"], err)
	}
	return nil
}

// unmount detaches the mount at path.
func unmount(path string) error {
	if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("umount %s: %w", path, err)
	}
	return nil
}

// overlayfsMagic is the kernel overlay file system's statfs type (OVERLAYFS_SUPER_MAGIC).
const overlayfsMagic = 0x794c7630

// isKernelOverlay says whether path is on a kernel overlay mount (not fuse-overlayfs, not a plain directory).
func isKernelOverlay(path string) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == overlayfsMagic, nil
}
