module github.com/keyleash/keyleash-go

go 1.19
