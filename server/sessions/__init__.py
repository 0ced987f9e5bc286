"""Active-learning sessions: a server resource that runs iterations as UWS jobs and takes the expert's labels."""
