module github.com/doppel-ft/doppel

go 1.26
