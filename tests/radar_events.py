"""One rainy event per network of ../shared/radar (folder relative to the radar root), shared by the
tests that need a real file of every network."""

EVENTS = {
    "knmi": "knmi_2021/2021-02-02-2005",
    "fmi": "pysteps/fmi/pgm/20160928",
    "mch": "pysteps/mch/20160711",
    "rmi": "pysteps/rmi/radqpe/20210704",
    "bom": "pysteps/bom/prcp-cscn/2/2018/06/16",
}
