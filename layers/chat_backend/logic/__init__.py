"""Use cases. Logic never reads the environment and never imports boto3: it is handed its store,
registry, queue and poster, so unit tests run it against moto or plain fakes."""
