//go:build !race

package ft

const raceBuild = false
