module netbench/goserver

go 1.19
