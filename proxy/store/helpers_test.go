package store

import "github.com/wasmgate/wasmgate/proxy/config"

func storeConfig(kind string, r *config.Redis) config.Store {
	return config.Store{Kind: kind, Redis: r}
}
