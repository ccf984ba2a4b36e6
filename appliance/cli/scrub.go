package cli

import (
	"context"
	"errors"
)

func cmdScrub(ctx context.Context, e *env, args []string) error {
	return errors.New("scrub needs the erasure-coded pool, which is not built yet")
}
