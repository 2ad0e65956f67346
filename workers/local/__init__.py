"""The embedded local stack: AWS as a moto server on loopback, with DynamoDB's single-item atomicity."""
