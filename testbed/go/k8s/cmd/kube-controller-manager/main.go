// Command kube-controller-manager is upstream's controller manager, built for the local test bed.
package main

import (
	"os"
	_ "time/tzdata" // The CronJob controller schedules in spec.timeZone.

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
