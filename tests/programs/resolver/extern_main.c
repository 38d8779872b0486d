/* Defines the global that extern_use.c only declares (DW_AT_declaration, no location there). */
long shared_counter = 3;
int report_shared(int round);

int main(void)
{
    int round;

    for (round = 1; round <= 2; round++) {
        shared_counter += 4 * round;
        report_shared(round);
    }
    return 0;
}
