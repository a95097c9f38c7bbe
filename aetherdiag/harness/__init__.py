"""Worker fleet and publisher that run a plan against any broker and record deliveries."""
