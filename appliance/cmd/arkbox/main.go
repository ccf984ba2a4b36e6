// Command arkbox is the backup appliance's single program: the CLI for the
// repository and, later, the server.
package main

import (
	"os"

	"github.com/arkbox/arkbox/appliance/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
