//go:build !amd64

package pagediff

func archs() []arch { return []arch{portable} }

func bestArch() arch { return portable }
