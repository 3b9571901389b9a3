module github.com/doppel-ft/doppel

go 1.26.3

require golang.org/x/sys v0.50.0

require (
	github.com/klauspost/compress v1.20.4
	golang.org/x/arch v0.32.0
	golang.org/x/crypto v0.49.0
)

require github.com/cespare/xxhash/v2 v2.3.0 // indirect

require (
	github.com/google/btree v1.1.2 // indirect
	golang.org/x/exp v0.0.0-20250711185948-6ae5c78190dc // indirect
	golang.org/x/time v0.15.0 // indirect
	gvisor.dev/gvisor v0.0.0-20260701204157-69c2d17aea96
)
