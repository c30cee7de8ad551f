// etcd server built from go.etcd.io/etcd/server/v3 at the version scripts/kube
// pins: the same main as upstream's etcd binary. scripts/kube writes this
// wrapper's go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
