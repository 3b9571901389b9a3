package pagediff

func bestArch() arch { return portable }
