/*
 * vtoe-mpi-pingpong: the project's MPI ping-pong.  Rank 0 and rank 1 bounce a message of each
 * size and check every byte that comes back; rank 0 prints IMB PingPong's table (bytes,
 * repetitions, one-way time in usec, MB/s) under IMB's headings, so one parser reads both, and
 * a final checksum line.
 *
 *   mpirun -np 2 vtoe-mpi-pingpong [MAX_BYTES [ITERS]]
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reps_for(size_t bytes, int iters)
{
	/* as IMB does: fewer repetitions for large messages, so each size takes similar time */
	size_t budget = (size_t)iters * 4096;
	int r = bytes > 4096 ? (int)(budget / bytes) : iters;
	return r < 10 ? 10 : r;
}

/* 0, 1, 4, 16, ... and max itself last */
static size_t next_size(size_t bytes, size_t max)
{
	size_t next = bytes ? bytes * 4 : 1;

	return next > max ? max : next;
}

int main(int argc, char **argv)
{
	size_t max = argc > 1 ? strtoull(argv[1], NULL, 0) : (size_t)4 << 20;
	int iters = argc > 2 ? atoi(argv[2]) : 1000;
	int rank, size;
	unsigned char *buf;
	uint64_t sum = 0;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	if (size != 2) {
		if (rank == 0)
			fprintf(stderr, "vtoe-mpi-pingpong: run it with exactly 2 ranks (mpirun -np 2)\n");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	buf = malloc(max ? max : 1);
	if (!buf)
		MPI_Abort(MPI_COMM_WORLD, 3);
	if (rank == 0)
		printf("# Benchmarking PingPong\n# #processes = 2\n#bytes #repetitions t[usec] Mbytes/sec\n");
	for (size_t bytes = 0;; bytes = next_size(bytes, max)) {
		int reps = reps_for(bytes, iters);
		for (size_t i = 0; i < bytes; i++)
			buf[i] = (unsigned char)(i * 7 + bytes);
		MPI_Barrier(MPI_COMM_WORLD);
		double t0 = MPI_Wtime();
		for (int r = 0; r < reps; r++) {
			if (rank == 0) {
				MPI_Send(buf, (int)bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
				MPI_Recv(buf, (int)bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			} else {
				MPI_Recv(buf, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
				MPI_Send(buf, (int)bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
			}
		}
		double usec = (MPI_Wtime() - t0) * 1e6 / reps / 2;
		/* the bytes came back unchanged */
		for (size_t i = 0; i < bytes; i++)
			if (buf[i] != (unsigned char)(i * 7 + bytes)) {
				fprintf(stderr, "vtoe-mpi-pingpong: rank %d: byte %zu of %zu is wrong\n", rank, i, bytes);
				MPI_Abort(MPI_COMM_WORLD, 4);
			}
		for (size_t i = 0; i < bytes; i++)
			sum += buf[i];
		if (rank == 0)
			printf("%zu %d %.2f %.2f\n", bytes, reps, usec, usec > 0 ? bytes / usec : 0.0);
		if (bytes >= max)
			break;
	}
	if (rank == 0)
		printf("# checksum %llu ok\n", (unsigned long long)sum);
	free(buf);
	MPI_Finalize();
	return 0;
}
