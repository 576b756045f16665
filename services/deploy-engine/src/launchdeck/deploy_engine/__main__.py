from launchdeck.deploy_engine.main import main

main()
