module github.com/doppel-ft/doppel

go 1.26.0

require golang.org/x/sys v0.50.0

require golang.org/x/arch v0.32.0
