// Command sleeper is the RUN step of pkg/buildah's cancellation test: a build step that forks, and whose child
// ignores SIGTERM, as a careless build step may. Both sleep until they are killed.
//
//	sleeper TOKEN            starts "sleeper -child TOKEN", then sleeps
//	sleeper -child TOKEN     ignores SIGTERM, then sleeps
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-child" {
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("sleeper child", os.Getpid(), "started")
		time.Sleep(time.Hour)
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sleeper TOKEN")
		os.Exit(2)
	}
	child := exec.Command(os.Args[0], "-child", os.Args[1])
	child.Stdout, child.Stderr = os.Stdout, os.Stderr
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the child:", err)
		os.Exit(1)
	}
	fmt.Println("sleeper", os.Getpid(), "started")
	time.Sleep(time.Hour)
}
