"""What is stored and who may see it: the MongoDB driver (behind `db` alone), the embedded
mongod, the served collections and their schemas, filters, documents, and the principal whose
rights every read and write is checked against."""
