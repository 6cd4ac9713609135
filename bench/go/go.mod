module spanmap/bench/go

go 1.19
