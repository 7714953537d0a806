"""The three services together, as processes: `launch` runs them (`make run`); `score_csv` and
`simulate` drive a fresh local suite through the contracts. Nothing here imports a service's
package: the services are started by module name and reached over gRPC only."""
