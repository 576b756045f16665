from launchdeck.control_api.main import main

main()
