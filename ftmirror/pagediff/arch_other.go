//go:build !amd64

package pagediff

func bestArch() arch { return portable }
