// Command kube-apiserver is upstream's kube-apiserver, built from the Go module proxy for the local test bed.
package main

import (
	"os"
	_ "time/tzdata" // CronJob spec.timeZone validation needs the zone database.

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
