from hub.cli import module_main

module_main()
